require_relative "app"
run RecipeApp
