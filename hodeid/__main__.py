from hodeid.cli import main

main()
