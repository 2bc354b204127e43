"""The named frame sources; :mod:`evhw.data.registry` maps their prefixes to them."""
