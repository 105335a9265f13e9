"""The one place a method name is looked up. ``@register("name")`` on an objective class (or
``register("name", **defaults)(Class)`` for a preset of one) makes it known to the batches, the
run layer, the grids and the CLI; nothing else dispatches on a name."""

OBJECTIVES = {}  # name -> (objective class, the options this name presets)


def register(name, **defaults):
    """Class decorator: the objective as ``name``, with ``defaults`` over its own option defaults."""
    def add(cls):
        unknown = set(defaults) - set(cls.options())
        if unknown:
            raise TypeError(f"register({name!r}): {cls.__name__} has no option(s) {sorted(unknown)}")
        OBJECTIVES[name] = (cls, defaults)
        return cls
    return add


def objective_names():
    return sorted(OBJECTIVES)


def objective_class(name):
    if name not in OBJECTIVES:
        raise ValueError(f"unknown method {name!r}; registered: {objective_names()}")
    return OBJECTIVES[name][0]


def make_objective(name, config, vocab_size, **options):
    """The objective registered as ``name`` for a model of ``config``; ``options`` override its defaults."""
    cls, defaults = objective_class(name), OBJECTIVES[name][1]
    unknown = set(options) - set(cls.options())
    if unknown:
        raise TypeError(f"make_objective({name!r}): unknown option(s) {sorted(unknown)}; "
                        f"{cls.__name__} takes {sorted(cls.options()) or 'none'}")
    return cls.build(config, vocab_size, **{**defaults, **options})
