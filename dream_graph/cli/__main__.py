from dream_graph.cli import main

main()
