"""The pages of the app, one file each (run by st.navigation in app/main.py, never imported).

Not named pages/: Streamlit treats a pages/ folder beside the entry script as an old-style
multi-page app, and its test harness then runs the page without the entry script.
"""
