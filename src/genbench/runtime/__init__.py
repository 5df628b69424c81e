"""The base layer below data, models, training, sampling and metrics: devices, precision, seeded noise
(:mod:`genbench.runtime.device`), the data-parallel helpers (:mod:`genbench.runtime.distributed`) and run
provenance (:mod:`genbench.runtime.provenance`). It imports nothing of genbench but ``errors`` and ``io``."""
