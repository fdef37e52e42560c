"""What the tests share, one job a module:

- `system`: temporary directories, free ports, child processes, waiting;
- `proc`: inspecting other processes through /proc;
- `requires`: what a test needs of the machine (root, Debian packages);
- `pki`: keys, test CAs and the listeners' TLS material;
- `servers`: what every ACME test server offers, and running a test against each;
- `pebble`, `a2c`: the Pebble and acme2certifier test servers;
- `hostile`: a hand-made ACME server, for what neither real one can be made to send;
- `faults`: a proxy in front of Pebble that alters or replaces what it answers;
- `accountd`: talking to a lacme-accountd (ours or Perl's), and a stand-in one;
- `commands`: our commands and Perl lacme's, and running them;
- `masters`: a master (ours or Perl's) with a throwaway configuration;
- `offline`: our master with the stand-in client tests/fake_client.py, no ACME server;
- `users`: lacme's unprivileged users, which the master's children run as;
- `orphans`: leaving a process behind as a daemon does (setsid, double fork);
- `openssh`: a machine as the manuals' examples assume it (private /etc, /home,
  /root, /run, /srv and /usr/local in a mount namespace), and a real sshd there.

The programs the tests start as other processes (`fake_client.py`,
`inspect_child.py`, `orphaning.py`, `exchanging.py`, `spawn_master.py`,
`a2c_serve.py`) live beside the tests.
"""
