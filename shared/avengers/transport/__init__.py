"""Calling OpenAI-compatible endpoints: the endpoints file (``transport.endpoints``), a request's
deadline and the retries it bounds (``transport.deadline``, ``transport.retry``), what a request
needs and what each endpoint offers (``transport.capabilities``), the OpenAI request parameters
(``transport.openai_params``), the lean JSON client (``transport.upstream``), the backends
(``transport.backends``) and the per-model circuit breaker (``transport.breaker``)."""
