"""The columnar backend: the policy set's expression trees compiled to Polars expressions, deciding
whole tables of people at once, exactly as the online engine (durable-rules) decides one person.

`schema` is the contract both sides of a population run share: the person table in, the decision
table out. The online reference (population/online.py) produces the same decision table one person
at a time through the service core, and the differential tests hold the two equal.
"""
