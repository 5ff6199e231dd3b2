from cxrzoo.cli import main

main()
