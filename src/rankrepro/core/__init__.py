"""The generic mechanisms every topic shares: the batched trainer loop (:mod:`~rankrepro.core.trainer`), batched
optimizers (:mod:`~rankrepro.core.optim`), safe checkpoints (:mod:`~rankrepro.core.checkpoint`), per-run gradients by
autograd (:mod:`~rankrepro.core.autodiff`), rank measures and norms (:mod:`~rankrepro.core.measures`), seeds
(:mod:`~rankrepro.core.seeding`), atomic writes and hashes (:mod:`~rankrepro.core.io`), the user-facing exceptions
(:mod:`~rankrepro.core.errors`), process settings and provenance (:mod:`~rankrepro.core.runtime`) and undirected
edge lists (:mod:`~rankrepro.core.graphs`). It imports nothing else of rankrepro but the package version; every other
package may import it. Import the modules themselves (``from rankrepro.core.trainer import train``): this file
imports nothing, so that the workflow, which reads :mod:`~rankrepro.core.io` at parse time, never loads torch.
"""
