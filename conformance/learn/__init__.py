"""Learning a server's state machine (issue 23): the Mealy machine a server's replies make over
an alphabet drawn from the vocabulary, learned with AALpy through the checked session (so
every observation is also checked), then compared with the model and with other servers.

``alphabet`` (the inputs), ``sul`` (the server as AALpy's system under learning), ``learner``
(AALpy's KV, bounded), ``machine`` (a learned machine as data: JSON and DOT),
``compare`` (against the model, between servers), ``run`` (``python -m conformance learn``).
"""
