"""The rule engine: policy rules compiled onto durable-rules, and the decision built from them."""
