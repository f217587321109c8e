"""Laptop tooling, apart from the runtime: the embedded Airflow (``airflow_env``, one
``airflow.cfg`` per ``MLSYS_HOME``), the launcher behind ``make airflow`` / ``make mlflow``
(``launcher``), ``make demo`` (``demo``) and the synthetic CRM (``generate``).

Nothing in ``mlsys/``, ``dags/`` or ``plugins/`` imports this package at module level, and the
production image does not ship it (it is not part of the ``mlsys`` wheel: a clone's virtual
environment finds it through the editable install of the project). ``mlsys generate`` is the
one runtime command that reaches it, lazily, and says to run it from a clone otherwise.
"""
