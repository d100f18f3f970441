from hodei_agent.main import main

main()
