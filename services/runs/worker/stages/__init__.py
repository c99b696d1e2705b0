"""Stage executors: one module per stage type, each `async def run(stage, run, ctx)`."""
