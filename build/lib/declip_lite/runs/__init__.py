"""The experiment layer, one concern a module: config (naming), build, analysis, cache, pool, pipelines,
cli."""
