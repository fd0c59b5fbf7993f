"""The WaveSearch Streamlit app (``engine app``). Pages read studies only through ``storage``."""
