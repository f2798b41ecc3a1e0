"""realtime-vrn: real-time 3D face reconstruction with the Volumetric Regression Network (VRN).

The pipeline, one module or sub-package per stage: sources -> landmarks -> crop -> model/backends -> surface
-> render -> sinks; ``pipeline`` wires them, ``cli`` is the command line, ``bench`` measures.
Importing the package does no work and loads no heavy dependency.
"""

__version__ = "0.1.0"
