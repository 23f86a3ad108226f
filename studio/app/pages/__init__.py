"""The page scripts `st.navigation` runs: each draws one page module's `render()`."""
