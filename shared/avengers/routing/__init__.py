"""The parts a :class:`avengers.Router` is composed of, and its one estimate pipeline.

========================  ==============================================================
module                    what it does
========================  ==============================================================
``routing.estimate``      where a query's estimate is computed: cluster weights -> sources
                          -> blend -> fallbacks -> trade-off -> order (:func:`estimate`)
``routing.statistics``    per-cluster (and per-task) outcome statistics, counting and the
                          shrinkage prior (:class:`ClusterStatistics`)
``routing.knn``           nearest-neighbour scores (:class:`NeighbourScores`)
``routing.classifiers``   the success classifiers of the hybrid estimate
                          (:class:`SuccessClassifiers`)
``routing.exploration``   exploration picks and pick probabilities (:class:`ExplorationPolicy`)
``routing.parts``         the fitted parts composed, and their saved arrays (:class:`RouterParts`)
``routing.decisions``     an estimate as one :class:`~avengers.RouteDecision` per query
``routing.persistence``   the JSON config of a saved router
========================  ==============================================================

Each part has ``fit`` (a classmethod), ``update``, ``add_model`` and an estimate of its own, and
keeps its arrays under the names of the router's fitted attributes (without the ``_``).
"""
