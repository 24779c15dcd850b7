"""The local-model demo: small llama.cpp model servers (:mod:`.local`) and the script that runs
the whole loop on them through the real command line (:mod:`.run`, ``python -m avengers.demo``).

Nothing in the core package imports this one; it needs the ``[demo]`` extra.
"""
