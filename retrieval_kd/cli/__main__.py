from retrieval_kd.cli import main

main()
