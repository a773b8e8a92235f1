"""The Streamlit side of vitviz: the only package that imports streamlit."""
