print("darter")
