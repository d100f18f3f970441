from hodeictl.main import main

main()
