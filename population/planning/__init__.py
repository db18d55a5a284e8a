"""Planning (issue 15): the plan's indicators, what a change of standard costs, who gains and who loses.

Reads decision tables (service/engine/columnar/schema.py) of a population (population/synthetic.py)
under a policy set, or under a proposed one: the base set with an overlay (service/policy/overlay.py).
"""
