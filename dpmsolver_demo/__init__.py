"""Embedded demo models for the DPM-Solver samplers: two small denoising networks trained on scikit-learn's
handwritten digits, their sigma-space wrappers, the demo command (`python -m dpmsolver_demo`) and the training
script (`python -m dpmsolver_demo.train`). Importing this package loads nothing; see `weights_io.load_model`.
"""
