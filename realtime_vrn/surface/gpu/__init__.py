"""The surface stage on the GPU: marching cubes as a CUDA kernel (CuPy) and its NumPy twin.

- :mod:`.mc_tables`  - the marching-cubes tables, shared by the kernel and the twin;
- :mod:`.mc_twin`    - the NumPy twin of every kernel phase (runs anywhere; the kernel's reference);
- :mod:`.mc_cupy`    - :class:`~.mc_cupy.CupyMarchingCubes`, the kernel (``marching_cubes.cu`` here, package data
  read with ``importlib.resources``) driven by ``cupy.RawModule``; needs the ``gpu`` extra and an NVIDIA GPU;
- :mod:`.extractor`  - :class:`~.extractor.DeviceSurfaceExtractor`, the surface stage's contract on device logits
  (chosen by :func:`realtime_vrn.surface.extractors.open_surface`).

Nothing here imports CuPy at import time.
"""
