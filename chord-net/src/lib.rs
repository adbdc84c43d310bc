//! chord-net: the Chord wire protocol and node runtime. Not yet implemented; see issue 4.
