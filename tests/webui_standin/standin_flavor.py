"""Which WebUI fork the stand-in mimics: 'a1111', 'forge', 'reforge' or 'neo' (set by harness.load_webui)."""

FLAVOR = "a1111"
