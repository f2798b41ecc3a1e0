"""TensorRT, in one place: the backend, the engine recipes and cache, and ``realtime-vrn engine``.

- :mod:`.backend` - :class:`~.backend.TensorRTBackend` (registered as ``tensorrt``) and the engine builder;
  ``import tensorrt`` happens only when it opens (the ``tensorrt`` extra);
- :mod:`.engines` - recipes (``recipes/*.json``, package data) and the engine cache; needs no TensorRT;
- :mod:`.cli`     - ``realtime-vrn engine build|recipes``.

``README.md`` here documents the recipe fields and the cache.
"""
