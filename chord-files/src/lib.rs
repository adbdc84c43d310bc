//! chord-files: file sharing on the ring. Not yet implemented; see issue 5.
