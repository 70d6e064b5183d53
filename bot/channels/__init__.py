"""Channel adapters: each verifies, decodes and translates, then calls the dialogue engine.

Only modules in this package import a channel library (``telegram``, ``wechatpy``).
"""
