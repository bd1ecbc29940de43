"""Developer scripts: ComfyUI test harness, workflow conversion, previews and screenshots."""
