"""The GPU fast path's surface stage: marching cubes as a CUDA kernel (CuPy) and its NumPy twin.

- :mod:`.mc_tables`  - the marching-cubes tables, shared by the kernel and the twin;
- :mod:`.mc_twin`    - the NumPy twin of every kernel phase (runs anywhere; the kernel's reference);
- :mod:`.mc_cupy`    - :class:`~.mc_cupy.CupyMarchingCubes`, the kernel (``kernels/marching_cubes.cu``) driven by
  ``cupy.RawModule``; needs the ``gpu`` extra and an NVIDIA GPU;
- :mod:`.resources`  - where shipped kernel sources and engine recipes live (wheel or source checkout);

Nothing here imports CuPy or TensorRT at import time.
"""
