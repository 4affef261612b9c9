"""Matrix and tensor factorizations and their training, batched over runs: deep matrix factorization
(:mod:`~rankrepro.factorization.dmf`, its compiled gradient descent :mod:`~rankrepro.factorization.dmf_kernel`), CP
factorization for completion and sensing (:mod:`~rankrepro.factorization.cp`,
:mod:`~rankrepro.factorization.cp_sensing`), CP-ALS rank estimation (:mod:`~rankrepro.factorization.cp_als`), the
log-domain CP classifier (:mod:`~rankrepro.factorization.log_cp`), hierarchical tensor factorization
(:mod:`~rankrepro.factorization.htf`) and linear sensing of any factorized model
(:mod:`~rankrepro.factorization.sensing`). Imports only :mod:`rankrepro.core` and :mod:`rankrepro.data`; the
experiments import the modules themselves (this file imports nothing).
"""
