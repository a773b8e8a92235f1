"""vitviz: the Streamlit entry point. Page config and navigation only; pages draw themselves."""

from vitviz.ui import navigation

navigation.configure()
navigation.navigation().run()
