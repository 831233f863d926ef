from schemas.generate import main

main()
