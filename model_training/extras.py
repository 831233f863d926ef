"""The ``[train]`` extra: the packages only training needs (the worker's install has none of
them), checked before an ``eurovoc-train`` command imports them."""

import importlib.util

INSTALL_HINT = "pip install 'eurovoc-stream[train]'"
TRAIN_PACKAGES = {"accelerate": "accelerate", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}
"""Import name -> distribution name of every package of the ``[train]`` extra."""


def missing_train_packages() -> list[str]:
    """The distributions of the ``[train]`` extra that cannot be imported (none imported)."""
    return [package for module, package in TRAIN_PACKAGES.items()
            if importlib.util.find_spec(module) is None]
