from hodeictl.cli import main

main()
