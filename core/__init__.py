"""Negative Space core: import, mine, judge, clean, train and measure hard negatives.

Nothing in this package imports Streamlit; the app's pages and the CLI both call these modules.
"""

__version__ = "0.1.0"
