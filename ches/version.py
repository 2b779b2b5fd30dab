"""The version of CHES Studio: written into every run's manifest, probe, check and export (`ches --version`).

Here, not in ches/__init__.py, so that the modules that record it do not import the package face, which imports
them (lazily) for the Python API.
"""
__version__ = "0.1.0"
