"""The sandbox backends: warm workers (``worker_pool``) run jobs for a ``PoolExecutor``,
started by bubblewrap or as plain processes (``local``), in Docker containers
(``docker_pool``, whose image ``docker_image`` builds) or on every node of a Ray cluster
(``ray_cluster``); ``choice`` picks one by name, ``cgroups`` caps bubblewrap's workers."""
