"""Population runs and planning: the policy set over whole tables of people.

- `persons`: person rows to and from service requests (the differential tests and the online
  reference use it);
- `online`: the reference decider, one person at a time through the service core;
- `backends`: pick a decider (columnar, the default, or online) for a policy directory.
The columnar backend itself lives beside the durable-rules one, in service/engine/columnar/.
"""
