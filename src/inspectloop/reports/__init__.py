"""Reports a person reads: self-contained HTML pages (no scripts, no external resources) and their JSON.

``html`` holds the shared building blocks (page shell, tables, percentages, numbers, embedded pictures,
thumbnails); ``evaluation``, ``acceptance`` and ``recalibration`` render one report each from data they
are given; ``model_card`` gathers what a workspace knows about a model version and renders its card.
Importing this package loads nothing: import the module you need.
"""
