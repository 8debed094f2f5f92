"""Everything poolshift knows about the project's own connection helpers (any name: found by behavior).

The runner needs, before any file is transformed: the short names to prefilter on and the helpers in the tree
(:mod:`.discovery`, reading what functions return with :mod:`.returns`), whether each connects like the shim
(:mod:`.equivalence`, with :mod:`.connect_arguments` for the parameters) and, for the cleanup phase, every
reference that is left (:mod:`.references`). The rules that rewrite helper calls find them with :mod:`.uses`
and look up what differs from the shim with :mod:`.lookup`. These modules state facts; what a rule does about
them (its reason codes) is the rules' business.
"""
