"""Stand-in of the SD-WebUI `modules` package for tests (see ../README.md); not the WebUI."""
