"""The engine: ``RLM``, its options, model routes and resources, the run loop, sub-calls,
budgets, the context, the prompts and reading the model's replies.

Private: import from :mod:`rlm_async`.
"""
