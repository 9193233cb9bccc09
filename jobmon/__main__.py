from jobmon.cli import main

raise SystemExit(main())
