"""Answering a query with voting: message normalisation and the routing text
(``answering.messages``), answer extraction and vote counting (``answering.voting``), tool calls
and structured output as votes (``answering.toolcalls``), sampling settings (``answering.config``),
the vote step (``answering.tally``), the adaptive sampler (``answering.sampler``), answer results
(``answering.results``) and the :class:`~avengers.Answerer` (``answering.answer``)."""
