"""bioslicer: toolpaths and machine programs for two-photon 3D bioprinting.

Units inside the package: micrometres (µm), seconds (s), milliwatts (mW).
"""

__version__ = "0.1.0"

from .errors import BioslicerError  # noqa: F401
