"""vitviz: the Streamlit entry point. Process setup, language, page config and navigation; pages draw themselves."""

from vitviz import allocator
from vitviz.ui import downloads, links, navigation

allocator.keep_freed_memory()  # once per process; see vitviz/allocator.py for what it buys
navigation.configure()  # the session's language first: the page titles speak it
navigation.navigation().run()
links.share_box()  # after the page: the URL follows what the page's widgets chose
downloads.numbers_button()
navigation.keep_training_alive()  # after the page, so its (empty) fragment adds nothing above the content
