"""Benchmarks: every measurement of the project, one environment record, one timing summary, one command.

- :mod:`.environment` - :func:`~.environment.environment_info`, the hardware / load / versions record of every
  benchmark JSON;
- :mod:`.timing`      - :func:`~.timing.summarize` (median, p95, mean, min, count) and the pipeline's bounded
  per-stage :class:`~.timing.LatencyStats`;
- :mod:`.run`         - ``realtime-vrn bench``: the pipeline headless plus the stage references in one JSON;
- :mod:`.backends`    - the network alone per inference backend, against torch float32;
- :mod:`.gpu`         - the network on CUDA and the CuPy marching cubes against their CPU references;
- :mod:`.render`      - render + read-back of a face-sized mesh;
- :mod:`.jitter`      - surface jitter on a still face, smoothing off and on;
- :mod:`.cli`         - the commands ``realtime-vrn bench backends | gpu | render`` (one stage alone; plain
  ``realtime-vrn bench`` is ``bench pipeline``, :mod:`.run`); ``python -m realtime_vrn.bench ...`` is the same
  command (``__main__``).

Nothing is imported here: the pipeline imports :mod:`.timing`, and :mod:`.run` imports the pipeline.
"""
