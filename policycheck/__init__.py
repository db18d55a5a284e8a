"""The policy test cases (policies/tests/*.yaml) and how strong they are.

`cases` runs the cases in-process through the domain core; `mutate` (`make mutate`) changes the
policy data one small step at a time and reports which changes the cases notice.
"""
