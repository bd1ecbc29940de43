"""Stable Diffusion WebUI install hook: the samplers need nothing beyond the WebUI's own torch.

Runs before WebUI start-up. It deliberately installs nothing (never torch); later versions may install
small optional packages with `launch.run_pip` only when missing.
"""
